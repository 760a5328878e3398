"""Checkpoint to quantized TFLite model bundle (workstation side; uses TensorFlow)."""
