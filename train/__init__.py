"""Workstation trainer: MobileNetV2 transfer learning on a folder of labelled photos."""
