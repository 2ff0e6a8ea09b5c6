"""K independent optimisations run as one: every tensor stacked along dim 0, one row per problem.

Adam is element-wise, so Adam over stacked rows is exactly Adam per row provided each row's
gradient is that of its own loss: the batch loss must be the SUM of the per-row losses (a mean
would scale every row's gradient by 1/K, which Adam's eps does not ignore). A row that is done
(early stop, a non-finite loss) is dropped with `keep`, parameters and Adam moments alike; the
other rows go on exactly as if it had never been there.
"""

import copy
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from pti_lab.errors import BadInputError
from pti_lab.models.stylegan2 import Generator


def adam(groups: list[dict], betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """torch.optim.Adam with one fused kernel per tensor where this torch has it (CPU and CUDA): the
    default multi-tensor Adam makes a pass over memory per arithmetic op, 5x slower on a CPU (measured,
    2.3 M parameters, 1 thread: 131 ms vs 25 ms per step). Same update up to float rounding."""
    try:
        return torch.optim.Adam(groups, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(groups, betas=betas)


class StackedAdam:
    """Adam over named tensors [K, ...] in groups (each with its own learning rate), rows droppable."""

    def __init__(
        self,
        groups: Sequence[dict[str, torch.Tensor]],  # per group: name -> initial value [K, ...] (copied)
        lrs: Sequence[float],                       # learning rate of each group
        betas: tuple[float, float] = (0.9, 0.999),  # Adam's betas
    ):
        assert len(groups) == len(lrs)
        self.groups = [{name: t.detach().clone().requires_grad_(True) for name, t in group.items()}
                       for group in groups]
        self.betas = betas
        self.optimizer = self.build(lrs)

    def build(self, lrs: Iterable[float]) -> torch.optim.Adam:
        return adam([{"params": list(group.values()), "lr": lr} for group, lr in zip(self.groups, lrs)], self.betas)

    def __getitem__(self, group: int) -> dict[str, torch.Tensor]:
        """The live tensors of a group: name -> [K_live, ...] leaf requiring grad."""
        return self.groups[group]

    def set_lr(self, lr: float, group: int = 0) -> None:
        self.optimizer.param_groups[group]["lr"] = lr

    def step(self, loss: torch.Tensor) -> None:
        """One Adam step on `loss` (the sum of the live rows' losses)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (a bool mask or indices over the live rows), with their Adam moments."""
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        state = self.optimizer.state
        moved = {}
        for group in self.groups:
            for name, old in group.items():
                new = old.detach()[rows].clone().requires_grad_(True)
                if old in state:
                    moved[new] = {key: value[rows].clone() if value.ndim > 0 else value
                                  for key, value in state[old].items()}
                group[name] = new
        self.optimizer = self.build(lrs)
        self.optimizer.state.update(moved)


def accepted(items: Sequence[Any], check: Callable[[Any], None]) -> tuple[list, list[int]]:
    """Check each problem of a batch on its own: (results: the BadInputError of each refused item in its
    place, None elsewhere; the indices of the accepted items), so that one bad input fails only itself."""
    results: list = [None] * len(items)
    live = []
    for index, item in enumerate(items):
        try:
            check(item)
            live.append(index)
        except BadInputError as error:
            results[index] = error
    return results, live


class StackedSynthesis:
    """G's synthesis network rendered with K copies of some of its weights: row k of every tuned tensor
    [K, ...] is problem k's generator; the other weights are G's own, shared and never written."""

    def __init__(
        self,
        G: Generator,        # the generator every problem starts from (left unchanged)
        names: list[str],    # the synthesis parameters that are tuned (names inside G.synthesis)
    ):
        self.G, self.names = G, names
        self.shared = {name: p.detach() for name, p in G.synthesis.named_parameters() if name not in names}

    def initial(self, K: int) -> dict[str, torch.Tensor]:
        """G's tuned weights, one row per problem: name -> [K, ...] (a view; StackedAdam copies it)."""
        weights = {name: self.G.synthesis.get_parameter(name).detach() for name in self.names}
        return {name: weight.expand(K, *weight.shape) for name, weight in weights.items()}

    def render_one(self, weights: dict[str, torch.Tensor], ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
        return torch.func.functional_call(self.G.synthesis, {**self.shared, **weights}, (ws,), {"noise_mode": noise_mode})

    def render(self, weights: dict[str, torch.Tensor], ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
        """ws [K, S, num_ws, w_dim] -> images [K, S, C, R, R], row k by problem k's weights [K, ...].
        One problem renders as the module itself would (no vmap: the same kernels as G.synthesis)."""
        if len(ws) == 1:
            return self.render_one({name: value[0] for name, value in weights.items()}, ws[0], noise_mode)[None]
        vectorised = torch.func.vmap(self.render_one, in_dims=(0, 0, None), randomness="different")
        return vectorised(weights, ws, noise_mode)

    def generator(self, weights: dict[str, torch.Tensor], row: int) -> Generator:
        """Problem `row`'s generator as a module of its own: G with that row's tuned weights (eval, frozen)."""
        tuned = copy.deepcopy(self.G).requires_grad_(False).eval()
        with torch.no_grad():
            for name, value in weights.items():
                tuned.synthesis.get_parameter(name).copy_(value[row])
        return tuned


def batched(items: Iterable, size: int) -> Iterator[list]:
    """`items` in lists of `size` (the last one shorter)."""
    iterator = iter(items)
    while group := list(islice(iterator, size)):
        yield group
