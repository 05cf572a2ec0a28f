"""torch.hub entry points of deeplabv3p: one per architecture of the zoo, generated from its registry.

torch.hub.list("deeplabv3p/deeplabv3p")
print(torch.hub.help("deeplabv3p/deeplabv3p", "deeplabv3plus_r50_d8"))
model = torch.hub.load("deeplabv3p/deeplabv3p", "deeplabv3plus_r50_d8", pretrained="cityscapes")
"""

from deeplabv3p.inference.torch_hub import DEPENDENCIES as _DEPENDENCIES
from deeplabv3p.inference.torch_hub import entrypoints as _entrypoints

dependencies = list(_DEPENDENCIES)

globals().update(_entrypoints())
