"""The Raspberry Pi side: frames, bundles and the camera daemon. Never imports TensorFlow."""
