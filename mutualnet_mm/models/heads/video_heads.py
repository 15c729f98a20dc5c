"""Recognition heads for slimmable video backbones, registered in mmaction2's MODELS.

They have no width of their own: their first fully connected layer takes whatever
channels the backbone delivers (a prefix of its full inputs) and the class scores keep
their size. At a backbone width the head computes the stock head built with
``in_channels`` equal to the backbone's output channels at that width.
"""
from mmaction.models.heads import SlowFastHead, X3DHead
from mmaction.registry import MODELS

from ...ops import convert_to_slimmable
from ..stock import InputTwin, drop_in_signature


@MODELS.register_module()
@drop_in_signature(X3DHead)
class SlimmableX3DHead(X3DHead):
    """mmaction2 ``X3DHead`` that takes the features of a ``SlimmableX3D`` at any width.

    Args:
        *args, **kwargs: mmaction2 ``X3DHead`` arguments (``in_channels`` at full width).
    """

    input_twin = InputTwin('X3DHead', 'in_channels', 'backbone')

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        convert_to_slimmable(self)
        self.fc2.slim_out = False  # the class scores


@MODELS.register_module()
@drop_in_signature(SlowFastHead)
class SlimmableSlowFastHead(SlowFastHead):
    """mmaction2 ``SlowFastHead`` that takes a ``SlimmableResNet3dSlowFast``'s features.

    The head concatenates ``(fast, slow)``: the active inputs are a prefix of the full
    ones as long as the fast features keep their full width, which
    ``SlimmableResNet3dSlowFast`` guarantees when the fast pathway has 8 base channels
    (every mmaction2 SlowFast config).

    Args:
        *args, **kwargs: mmaction2 ``SlowFastHead`` arguments (``in_channels`` at full
            width).
    """

    input_twin = InputTwin('SlowFastHead', 'in_channels', 'backbone')  # both pathways

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        convert_to_slimmable(self)
        self.fc_cls.slim_out = False  # the class scores
