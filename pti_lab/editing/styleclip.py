"""StyleCLIP latent optimisation: move the pivot until the (tuned) generator's image matches a text.

Minimises, over a latent offset d (W: one [w_dim] offset for every ws row; W+: one per row),
    (1 - cos(CLIP(G(ws + d)), CLIP(prompt)))  +  l2_lambda * ||d||^2  +  id_lambda * (1 - cos(ID(G(ws + d)), ID(G(ws))))
with Adam and the StyleGAN2 projector's learning-rate schedule (StyleCLIP's `run_optimization.py`:
lr 0.1, 300 steps, l2_lambda 0.008, id_lambda 0.005; its CLIP loss 1 - logits/100 is 1 - cos, and
its ||w - w_src||^2 sums over all 18 rows, so in W the offset counts num_ws times).
Strengths t then give the edits ws + t * d (t = 1: the optimised latent). The weights balance the
CLIP model's gradients against the scale of W: StyleCLIP's l2_lambda suits OpenAI CLIP on FFHQ; the
synthfaces config uses 0.001, measured on the tiny CLIP (0.008 barely moves the image there, 0
drifts to another face).

CLIP: any object with encode_image(images in [-1, 1]) and encode_text(list of str) returning
L2-normalised embeddings: the synthfaces tiny CLIP offline (`pti_lab.synthfaces.tiny_clip.load_clip`), or
Hugging Face's CLIPModel (`pti_lab.models.hf_clip.HuggingFaceCLIP`, e.g. openai/clip-vit-base-patch32).
"""

from typing import Optional

import torch

from pti_lab.editing.editor import Edit, Editing, Editor, check_pivot, check_strengths
from pti_lab.errors import BadInputError, NonFiniteLossError
from pti_lab.inversion.projector import ramped_learning_rate
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback

SPACES = ("w", "w_plus")


class StyleCLIPEditor(Editor):
    def __init__(
        self,
        prompt: str,                           # the text the edit should match, e.g. 'a smiling face'
        clip,                                  # image-text model (encode_image / encode_text)
        identity=None,                         # identity network for the ID loss; None = no ID loss
        space: str = "w",                      # w: one offset for all rows; w_plus: one per row
        steps: int = 300,                      # optimisation steps
        lr: float = 0.1,                       # peak learning rate
        lr_rampup: float = 0.05,               # fraction of the steps of linear warm-up
        lr_rampdown: float = 0.25,             # fraction of the steps of cosine decay
        l2_lambda: float = 0.008,              # weight of ||d||^2 (stay near the pivot)
        id_lambda: float = 0.005,              # weight of the ID loss (keep the person)
        strengths: list[float] = (1.0,),       # t in ws + t * d, one edit each
        attribute: Optional[str] = None,       # attribute scored as target_delta; null = none
        noise_mode: str = "const",             # noise of the renders being optimised
    ):
        if not isinstance(prompt, str) or not prompt.strip():
            raise BadInputError(f"editor.prompt={prompt!r}: StyleCLIP needs a non-empty text prompt")
        if space not in SPACES:
            raise BadInputError(f"editor.space={space!r}: expected one of {', '.join(SPACES)}")
        if steps < 1 or lr <= 0 or l2_lambda < 0 or id_lambda < 0:
            raise BadInputError(f"editor: need steps >= 1, lr > 0, l2_lambda >= 0 and id_lambda >= 0; got "
                                f"steps={steps}, lr={lr}, l2_lambda={l2_lambda}, id_lambda={id_lambda}")
        if id_lambda > 0 and (identity is None or not identity.differentiable):
            name = type(identity).__name__ if identity is not None else "none"
            raise BadInputError(f"editor.id_lambda={id_lambda}: the ID loss needs a differentiable identity "
                                f"network, and {name} is not; set editor.id_lambda=0 or identity=synthfaces/arcface")
        self.prompt, self.clip, self.identity, self.space = prompt, clip, identity, space
        self.text_embedding = clip.encode_text([prompt]).detach()  # [1, D]; unknown words fail here
        self.steps, self.lr, self.lr_rampup, self.lr_rampdown = steps, lr, lr_rampup, lr_rampdown
        self.l2_lambda, self.id_lambda = l2_lambda, id_lambda
        self.strengths = check_strengths(strengths, "editor")
        self.attributes = (attribute,) if attribute else ()
        self.noise_mode = noise_mode

    def prepare(self, G: Generator) -> None:
        self.clip.to(next(G.parameters()).device)
        if self.identity is not None:
            self.identity.to(next(G.parameters()).device)

    def optimise(self, G: Generator, ws: torch.Tensor,
                 on_step: Optional[StepCallback] = None) -> tuple[torch.Tensor, list[dict]]:
        """The offset d, [1, 1 or num_ws, w_dim], found for `ws`, and the losses of each step
        (clip, l2, id, loss)."""
        ws = ws.detach()
        rows = 1 if self.space == "w" else G.num_ws
        offset = torch.zeros(1, rows, G.w_dim, device=ws.device, requires_grad=True)
        optimizer = torch.optim.Adam([offset], lr=self.lr)
        text = self.text_embedding.to(ws.device)
        source_id = None
        if self.id_lambda > 0:
            with torch.no_grad():
                source_id = self.identity.embed(G.synthesis(ws, noise_mode=self.noise_mode).clamp(-1, 1))[0]
        G_requires_grad = [p.requires_grad for p in G.parameters()]
        G.requires_grad_(False)  # gradients go to the offset only
        history = []
        try:
            for step in range(self.steps):
                for group in optimizer.param_groups:
                    group["lr"] = ramped_learning_rate(step / self.steps, self.lr, self.lr_rampup, self.lr_rampdown)
                # Clamped as it would be shown: the networks judge the picture, not overshoot they never saw.
                image = G.synthesis(ws + offset, noise_mode=self.noise_mode).clamp(-1, 1)  # [1, C, R, R]
                clip_loss = 1 - (self.clip.encode_image(image) * text).sum()
                l2_loss = offset.square().sum() * (G.num_ws if self.space == "w" else 1)
                loss = clip_loss + self.l2_lambda * l2_loss
                losses = {"clip": clip_loss.item(), "l2": l2_loss.item()}
                if source_id is not None:
                    id_loss = 1 - (self.identity.embed(image)[0] * source_id).sum()
                    loss = loss + self.id_lambda * id_loss
                    losses["id"] = id_loss.item()
                losses["loss"] = loss.item()
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"StyleCLIP: loss became {loss.item()} at step {step}")
                history.append(losses)
                if on_step is not None:
                    on_step(step, losses, image.detach())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        finally:
            for param, flag in zip(G.parameters(), G_requires_grad):
                param.requires_grad_(flag)
        return offset.detach(), history

    def edits(self, G: Generator, ws: torch.Tensor, on_step: Optional[StepCallback] = None) -> Editing:
        check_pivot(G, ws)
        offset, losses = self.optimise(G, ws, on_step)
        name = f"styleclip:{self.prompt}"
        edits = [Edit(name=name, strength=t, ws=ws + t * offset, attributes=self.attributes) for t in self.strengths]
        return Editing(edits, losses)
