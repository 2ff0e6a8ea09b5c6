"""Editing metrics of one edit: does it keep the person, change the attribute, and only that one?

    id_sim         identity similarity between the reconstruction and the edited image
    id_sim_target  identity similarity between the real target image and the edited image
    target_delta   change of the edited attribute, scorer(edit) - scorer(reconstruction), in the
                   attribute's units (synthfaces: smile and yaw in [-1, 1], the others in [0, 1])
    other_delta    mean |change| of every other attribute the scorer knows

A value that cannot be computed is None with a reason (DESIGN §4): no identity network, no
attribute scorer, an edit without a scored attribute.

The scorer is any object with `predict(images) -> {attribute: [N]}`; on synthfaces the predictor
(`pti_lab.synthfaces.predictor.AttributePredictor`). Composite attributes are means of parts:
`age` = (wrinkles + grey_hair) / 2, the synthfaces cue of age, and `pose` = yaw (PTI's "rotation");
when an edit aims at a composite, its parts are not counted as "other".
"""

import torch

from pti_lab.errors import BadInputError
from pti_lab.metrics.image import IDENTITY_OFF

COMPOSITES = {"age": ("wrinkles", "grey_hair"), "pose": ("yaw",)}


def attribute_scores(scorer, images: torch.Tensor) -> dict:
    """{attribute: float tensor [N]} of the scorer, plus the composites whose parts it scores."""
    with torch.no_grad():
        scores = {name: values.float().cpu() for name, values in scorer.predict(images).items()}
    for name, parts in COMPOSITES.items():
        if all(part in scores for part in parts):
            scores[name] = sum(scores[part] for part in parts) / len(parts)
    return scores


def attribute_parts(name: str) -> tuple:
    return COMPOSITES.get(name, (name,))


class EditMetrics:
    """Scores edits; built from config group `metrics`, given the run's identity network by the pipeline."""

    def __init__(
        self,
        attributes=None,   # attribute scorer (predict(images) -> {name: [N]}); None = no attribute metrics
    ):
        self.scorer = attributes

    def known_attributes(self) -> list:
        """Attributes the scorer rates (its `attributes`), plus the composites of those."""
        if self.scorer is None:
            return []
        names = list(self.scorer.attributes)
        return sorted(names + [name for name, parts in COMPOSITES.items() if set(parts) <= set(names)])

    def check_attributes(self, names: tuple) -> None:
        """Fail before any work when an edit aims at an attribute the scorer does not know."""
        if self.scorer is None:
            return
        known = self.known_attributes()
        for name in names:
            if name not in known:
                raise BadInputError(f"editor attribute {name!r} is not scored by metrics "
                                    f"({type(self.scorer).__name__}); available: {', '.join(known)} "
                                    f"(set editor.attribute, or metrics=reconstruction)")

    def measure(self, target: torch.Tensor, reconstruction: torch.Tensor, edited: torch.Tensor,
                identity, attributes: tuple) -> dict:
        """Metrics of one edit ([1, C, R, R] images in [-1, 1]); `attributes`: those the edit aims at."""
        row, reasons = {}, {}
        edited = edited.clamp(-1, 1)
        for key, reference in (("id_sim", reconstruction), ("id_sim_target", target)):
            if identity is None:
                row[key], reasons[key] = None, IDENTITY_OFF
                continue
            (similarity,), (reason,) = identity.compare(reference.clamp(-1, 1), edited)
            row[key] = similarity
            if reason:
                reasons[key] = reason
        if self.scorer is None:
            row["target_delta"] = row["other_delta"] = None
            reasons["target_delta"] = reasons["other_delta"] = "no attribute scorer configured (metrics=reconstruction)"
        else:
            before = attribute_scores(self.scorer, reconstruction.clamp(-1, 1))
            after = attribute_scores(self.scorer, edited)
            change = {name: (after[name] - before[name]).item() for name in before}
            if attributes:
                row["target_delta"] = change[attributes[-1]]
            else:
                row["target_delta"] = None
                reasons["target_delta"] = "the edit names no attribute (set editor.attribute)"
            aimed = {part for name in attributes for part in (name, *attribute_parts(name))}
            others = [name for name in change if name not in aimed and name not in COMPOSITES]
            row["other_delta"] = sum(abs(change[name]) for name in others) / len(others) if others else None
            if not others:
                reasons["other_delta"] = "the scorer knows no other attribute"
        if reasons:
            row["reasons"] = reasons
        return row


def edit_summary(rows: list) -> dict:
    """{edit: {strength: {metric: mean over images}}} of results rows of stage 'edit'."""
    groups: dict = {}
    for row in rows:
        if row.get("stage") != "edit":
            continue
        metrics = groups.setdefault(row["edit"], {}).setdefault(f"{row['strength']:g}", {})
        for key, value in row.items():
            if key.endswith(("id_sim", "id_sim_target", "target_delta", "other_delta")) and value is not None:
                metrics.setdefault(key, []).append(value)
    return {edit: {strength: {key: sum(v) / len(v) for key, v in metrics.items()} for strength, metrics in by_strength.items()}
            for edit, by_strength in groups.items()}
