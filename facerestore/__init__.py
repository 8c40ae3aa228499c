"""facerestore: modular, plugin-based face restoration (JDSR-GAN masked face super-resolution).

Public entry points: :func:`facerestore.components.create`, :func:`facerestore.recipe.load_recipe`,
:class:`facerestore.restore.Restorer`. Importing this package registers nothing and imports no
model code; plugins load on first use of the registry.
"""

__version__ = "0.1.0"
