"""Cost of switching configuration in ``AdaptiveInferencer``, next to its cheapest predict.

A switch is what ``AdaptiveInferencer.predict`` does before every prediction: restore the
configuration's widths (:class:`WidthSnapshot`) and copy in its BN statistics
(:class:`BNStateSwitch`). The script times, on the demo detector with every configuration
of the demo grid prepared:

- ``switch``: the inferencer's switch, cycling through the configurations;
- ``switch (set_width + load_bn_state)``: the same change done the general way;
- ``predict``: batch-1 ``predict`` at the cheapest configuration (smallest width and
  scale), on an image already preprocessed and rescaled.

It prints the switch's cost as a share of that predict (``--target 0.05`` also prints
whether the share is within 5%).

    python benchmarks/switch_cost.py
"""
import argparse
import itertools
import time

import torch
from common import (
    Case,
    add_grid_args,
    add_model_args,
    add_target_arg,
    build_model,
    config_on_generated_data,
    first_batch,
    generated_data,
    markdown_table,
    median,
    print_footer,
    print_header,
    spread,
    target_note,
    time_interleaved,
)

from mutualnet_mm.deploy.bn_stats import BNStateSwitch, bn_state, load_bn_state
from mutualnet_mm.engine.rescale import DetBatchRescaler
from mutualnet_mm.engine.subnet import SubnetConfig
from mutualnet_mm.ops import WidthSnapshot, set_width


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_model_args(parser, size=128, batch_size=1, repeats=30)
    add_grid_args(parser)
    parser.add_argument('--switches', type=int, default=48,
                        help='switches per timed sample (cycling through the grid)')
    add_target_arg(parser, what='the switch / cheapest predict share')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print_header('Switching configuration vs. the cheapest predict (batch 1)', args)
    root = generated_data(args.size, num_train=2, root=args.data_root)
    cfg = config_on_generated_data(args.config, root, args.size, batch_size=1)
    model = build_model(cfg).eval()
    configs = [SubnetConfig(w, s) for w, s in itertools.product(args.widths, args.scales)]
    states = {}
    for config in configs:  # distinct statistics per configuration, as calibrated ones are
        set_width(model, config.width)
        states[config] = {name: (mean + config.scale, var * config.width)
                          for name, (mean, var) in bn_state(model).items()}
    switches = {c: (WidthSnapshot(model, c.width), BNStateSwitch(model, states[c]))
                for c in configs}
    cheapest = min(configs, key=lambda c: (c.width, c.scale))
    with torch.no_grad():
        batch = model.data_preprocessor(first_batch(cfg, 'test_dataloader'), False)
    inputs, samples = DetBatchRescaler()(batch['inputs'], batch['data_samples'], cheapest)
    order = itertools.cycle(configs)

    def switch_to(config: SubnetConfig) -> None:
        widths, statistics = switches[config]
        widths.restore()
        statistics.load()

    def switch() -> None:
        for _ in range(args.switches):
            switch_to(next(order))

    def general_switch() -> None:
        for _ in range(args.switches):
            config = next(order)
            set_width(model, config.width)
            load_bn_state(model, states[config])

    def predict() -> None:
        with torch.no_grad():
            model(inputs, samples, mode='predict')

    cases = [Case('switch', switch), Case('general', general_switch),
             Case('predict', predict, setup=lambda: switch_to(cheapest))]
    times = time_interleaved(cases, args.repeats, args.warmup)
    predict_ms = median(times['predict']) * 1000
    rows = []
    for name, label in (('switch', 'switch (AdaptiveInferencer)'),
                        ('general', 'switch (set_width + load_bn_state)')):
        ms = median(times[name]) * 1000 / args.switches
        rows.append(dict(case=label, ms=ms, quartiles=spread(times[name]),
                         share_of_cheapest_predict=ms / predict_ms))
    rows.append(dict(case=f'predict at {cheapest.name}', ms=predict_ms,
                     quartiles=spread(times['predict']), share_of_cheapest_predict=1.0))
    print(f'\n{len(configs)} configurations; median ms ({args.repeats} interleaved rounds, '
          f'{args.warmup} warm-up; a switch sample is {args.switches} switches):')
    print(markdown_table(rows))
    share = rows[0]['share_of_cheapest_predict']
    print(f'\nswitch / cheapest predict: {share:.4f}' + target_note([share], args.target))
    print_footer(started)


if __name__ == '__main__':
    main()
