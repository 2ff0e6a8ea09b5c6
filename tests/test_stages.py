"""The stage contracts (pti_lab/stages.py): every component a config group can build declares what the
driver calls, and a component that does not is refused when the run is built, in one line."""

import importlib

import pytest
import torch
import yaml

from pti_lab.config import ConfigError, contract_members
from pti_lab.models.lpips import LPIPS
from pti_lab.stages import CONTRACTS, Stages
from pti_lab.models.stylegan2 import Generator
from tests.conftest import REPO


def targets(group: str) -> list[tuple[str, str]]:
    """(option, _target_) of every option of a config group that builds a component (not `null`)."""
    found = []
    for path in sorted((REPO / "conf" / group).glob("*.yaml")):
        node = yaml.safe_load(path.read_text()) or {}
        if "_target_" in node:
            found.append((path.stem, node["_target_"]))
    return found


def resolve(target: str) -> type:
    module, name = target.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def tiny_generator() -> Generator:
    return Generator(8, 0, 8, 16, 3, mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=8))


CASES = [(group, option, target) for group in CONTRACTS for option, target in targets(group)]


def test_every_contract_group_has_options():
    assert {group for group, _, _ in CASES} == set(CONTRACTS), CASES


@pytest.mark.parametrize("group,option,target", CASES, ids=[f"{g}={o}" for g, o, _ in CASES])
def test_every_component_a_config_builds_declares_its_contract(group, option, target):
    missing = contract_members(CONTRACTS[group]) - set(dir(resolve(target)))
    assert not missing, f"{group}={option} ({target}) lacks {sorted(missing)}"


def test_a_component_without_its_contract_is_refused_in_one_line_naming_what_it_lacks():
    G = tiny_generator()

    class InvertsOneAtATime:  # the old duck-typed inverter: no invert_batch, no one_step
        weights_fingerprint = None

        def prepare(self, G):
            pass

        def invert(self, G, target, seed=0, on_step=None):
            raise NotImplementedError

    with pytest.raises(ConfigError) as error:
        Stages(generator=G, inverter=InvertsOneAtATime(), perceptual=LPIPS(net="alex"), identity=None)
    message = str(error.value)
    assert "\n" not in message and message.startswith("inverter: ") and "Inverter contract" in message
    assert message.endswith("(it has no invert_batch, one_step)"), message


def test_off_is_none_for_every_optional_stage():
    G = tiny_generator()
    from pti_lab.inversion import WInverter
    stages = Stages(generator=G, inverter=WInverter(), perceptual=LPIPS(net="alex"), identity=None)
    assert (stages.tuner, stages.regularizer, stages.editor, stages.identity) == (None, None, None, None)
    assert isinstance(stages.perceptual, torch.nn.Module)


def test_the_logger_a_config_builds_fulfils_the_recorders_contract_and_another_is_refused(tmp_path):
    from pti_lab.tracking.recorder import Logger, Recorder
    from pti_lab.tracking.store import RunStore

    for option, target in targets("logger"):
        missing = contract_members(Logger) - set(dir(resolve(target)))
        assert not missing, f"logger={option} ({target}) lacks {sorted(missing)}"

    class PrintsSteps:  # no start, results, images, summary or finish
        def log_step(self, *args):
            print(*args)

    with pytest.raises(ConfigError, match=r"^logger: .*PrintsSteps does not fulfil the Logger contract"):
        Recorder(RunStore(tmp_path), PrintsSteps())
