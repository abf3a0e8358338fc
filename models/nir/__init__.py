"""NIR at the border: spikestack's extension nodes, exporters, importer and inspector (docs/nir/nodes.md).

Importing any part of this package registers our node types with stock `nir.read` (`nodes.register`).
"""

from .nodes import register

register()
