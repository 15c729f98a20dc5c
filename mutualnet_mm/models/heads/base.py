"""What every slimmable head shares: channel arguments follow the width, predictions do not."""
from typing import Callable, Sequence, Tuple

from torch import nn

from ...ops import SlimmableLayer, convert_to_slimmable, scale_channels
from ..norm_check import check_slimmable_norm
from ..stock import StockSlimmable, stock_arguments


class StockSlimmableHead(StockSlimmable):
    """A head whose stock counterpart at width ``w`` has its channel arguments scaled.

    Subclasses name the stock class (``drop_in_signature``), the constructor arguments that
    are channel counts (:attr:`channel_args`, read back from attributes of the same name)
    and the prediction layers whose outputs (class scores, box deltas, mask logits) never
    shrink (:attr:`prediction_layers`, names below the head). Every other argument
    reaches the stock config unchanged.
    """

    channel_args: Tuple[str, ...]
    prediction_layers: Tuple[str, ...]
    #: How a channel argument scales with the width (RTMDet's family rounds down).
    channel_rule: Callable[[int, float], int] = staticmethod(scale_channels)

    def __init__(self, *args, width_range: Sequence[float] = (0.25, 1.0), **kwargs) -> None:
        """Build the stock head from its arguments, then make it slimmable.

        Args:
            width_range: Smallest and largest width multiplier.
            *args, **kwargs: The stock head's arguments; norms, where they slim, batch
                norms.
        """
        kwargs = stock_arguments(self.stock_class, args, kwargs)
        super().__init__(**kwargs)
        self.make_slimmable(width_range, kwargs)

    @property
    def stock_type(self) -> str:
        """The registered type of the stock head."""
        return self.stock_class.__name__

    def make_slimmable(self, width_range: Sequence[float], stock_kwargs: dict) -> None:
        """Swap the layers for slimmable twins (at the end of ``__init__``).

        Args:
            width_range: Smallest and largest width multiplier.
            stock_kwargs: The keyword arguments the stock class was built with.
        """
        owner = type(self).__name__
        check_slimmable_norm(getattr(self, 'norm_cfg', None), owner)
        self.init_width_range(width_range)
        # train_cfg / test_cfg: the detector hands them to its head, they are not the head's
        self._stock_kwargs = {k: v for k, v in stock_kwargs.items()
                              if k not in ('init_cfg', 'train_cfg', 'test_cfg')
                              and k not in self.channel_args}
        convert_to_slimmable(self)
        for name in self.prediction_layers:
            try:
                found = self.get_submodule(name)  # nested names too: 'mask_head.projection'
            except AttributeError:
                found = None
            for layer in found if isinstance(found, nn.ModuleList) else [found]:
                if layer is None:
                    continue
                if not isinstance(layer, SlimmableLayer):
                    raise ValueError(f'{owner}.{name} is a {type(layer).__name__}, which '
                                     'cannot take slimmed inputs; use a plain Conv2d or Linear')
                layer.slim_out = False

    def stock_config(self, width: float) -> dict:
        channels = {arg: self.channel_rule(getattr(self, arg), width)
                    for arg in self.channel_args}
        return dict(type=self.stock_type, **self._stock_kwargs, **channels)
