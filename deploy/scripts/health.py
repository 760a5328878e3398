"""Prints the service's /healthz as one JSON object; run on the Pi by `python3 -c`, without binbot.

python3 is on every Raspberry Pi OS; the service answers on the Pi's loopback only. Arguments: url,
the model id awaited ("" for one look), the reload_error seen before, seconds to wait for that model
to be ok or for a new reload_error.
"""
import json, sys, time, urllib.error, urllib.request
url, want, before, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
MOST = 1 << 20  # bytes read of an answer; the service's own is about 1 KB
def fetch():
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read(MOST)
    except urllib.error.HTTPError as error:
        body = error.read(MOST)
        if not body.startswith(b"{"):
            return {"unreachable": "HTTP %d from %s" % (error.code, url)}
    except (OSError, ValueError) as error:
        return {"unreachable": "%s: %s" % (url, getattr(error, "reason", error))}
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError) as error:
        return {"unreachable": "%s: not a /healthz answer (%s)" % (url, str(error)[:100])}
    return answer if isinstance(answer, dict) else {"unreachable": "%s: not a /healthz answer" % url}
deadline = time.monotonic() + timeout
while True:
    health = fetch()
    if want and health.get("model") == want and health.get("ok"):
        break
    if health.get("reload_error") and health.get("reload_error") != before:
        break
    if time.monotonic() >= deadline:
        break
    time.sleep(0.5)
print(json.dumps(health))
