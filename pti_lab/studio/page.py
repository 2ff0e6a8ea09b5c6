"""The studio's web page (Gradio): a thin layer over session.Studio.

Gradio is what model demos are written in (Hugging Face Spaces, the StyleGAN / PTI / e4e demos): a
page of images and sliders in one Python file, served locally, its front end shipped inside the wheel.
Nothing is fetched from the internet: analytics are off, the fonts are the system's, no share link.
Every handler turns a failure into one line in the status box; no stack trace reaches the page.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

from typing import Callable, Optional  # noqa: E402

from pti_lab.extras import require  # noqa: E402
from pti_lab.finished_run import PICTURES  # noqa: E402
from pti_lab.studio.session import Slider, Studio  # noqa: E402

SPARE_SLIDERS = 4  # slots for StyleCLIP directions made on the page
# 64 px pictures shown large, with their pixels visible rather than smoothed.
CSS = """#edit-tuned img, #edit-original img {width: 288px !important; height: 288px !important}
.picture img {width: 160px !important; height: 160px !important}
#edit-tuned img, #edit-original img, .picture img {object-fit: contain !important; image-rendering: pixelated}"""
METRIC_NAMES = {"lpips": "LPIPS", "mse": "MSE", "psnr": "PSNR", "ms_ssim": "MS-SSIM", "id_sim": "ID sim"}


def one_line(exc: Exception) -> str:
    """An exception as one line for the page (pti-lab's own errors already are)."""
    text = str(exc).strip().splitlines()
    return f"**error:** {text[0] if text else type(exc).__name__}"


def guarded(handler: Callable, outputs: int) -> Callable:
    """`handler` whose failures become (no change..., the one-line message in the status box)."""
    gr = require("gradio", "the studio")

    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except Exception as exc:  # the page shows every failure as a line, never a trace
            return (*[gr.update() for _ in range(outputs - 1)], one_line(exc))
    return run


def metrics_table(metrics: dict) -> str:
    if not metrics:
        return ""
    keys = [k for k in METRIC_NAMES if any(k in row for row in metrics.values())]
    lines = ["| | " + " | ".join(METRIC_NAMES[k] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for stage, row in metrics.items():
        cells = [f"{row[k]:.4f}" if isinstance(row.get(k), float) else "–" for k in keys]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_page(studio: Optional[Studio], problem: Optional[str] = None, title: str = "pti-lab studio"):
    """The gr.Blocks of the studio (or, when the run could not be opened, a page that says why)."""
    gr = require("gradio", "the studio")
    with gr.Blocks(title=title) as page:
        gr.Markdown(f"## {title}")
        status = gr.Markdown(one_line(Exception(problem)) if problem else "", elem_id="status")
        if studio is None:
            return page
        fixed: list[Slider] = []
        try:
            fixed = list(studio.sliders())
        except Exception as exc:
            status.value = one_line(exc)
        first = studio.labels[0] if studio.labels else None
        choice = gr.Dropdown(studio.labels, value=first, label="image", elem_id="image")
        with gr.Row():
            target = gr.Image(label="target", format="png", interactive=False, elem_classes="picture", height=192)
            inversion = gr.Image(label="inversion", format="png", interactive=False, elem_classes="picture", height=192)
            tuned = gr.Image(label="tuned reconstruction", format="png", interactive=False, elem_classes="picture",
                             height=192)
        metrics = gr.Markdown(elem_id="metrics")
        with gr.Row():
            edit_tuned = gr.Image(label="edit, tuned generator", format="png", interactive=False,
                                  elem_id="edit-tuned", height=320)
            edit_original = gr.Image(label="edit, original generator", format="png", interactive=False,
                                     elem_id="edit-original", height=320)
        timing = gr.Markdown(elem_id="timing")
        sliders = []
        with gr.Row():
            with gr.Column():
                for s in fixed:
                    sliders.append(gr.Slider(s.minimum, s.maximum, value=s.value, step=0.05, label=s.key,
                                             elem_id=f"slider-{s.key}"))
                spares = [gr.Slider(-1, 1, value=0, step=0.01, label=f"(StyleCLIP {i + 1})", visible=False,
                                    elem_id=f"slider-styleclip-{i}") for i in range(SPARE_SLIDERS)]
            with gr.Column():
                prompt = gr.Textbox(label="StyleCLIP prompt", placeholder="a smiling face", elem_id="prompt")
                steps = gr.Number(value=100, precision=0, minimum=1, maximum=1000, label="StyleCLIP steps",
                                  elem_id="steps")
                run_styleclip = gr.Button("Run StyleCLIP", elem_id="run-styleclip")
                with gr.Row():
                    reset = gr.Button("Reset sliders", elem_id="reset")
                    animate = gr.Button("Animate (MP4)", elem_id="animate")
                    save = gr.Button("Save", variant="primary", elem_id="save")
                video = gr.Video(label="the edit from -1x to +1x, tuned | original", elem_id="video",
                                 interactive=False)
        everything = sliders + spares

        def values(args) -> dict:
            keys = [s.key for s in studio.sliders()]
            return {key: float(v) for key, v in zip(keys, args) if v}

        def show_image(label):
            image = studio.image(label)
            pictures = [str(image.picture(kind)) if image.picture(kind).is_file() else None for kind in PICTURES]
            return (*pictures, metrics_table(studio.metrics(label)), "")

        def update(label, *args):
            shot = studio.render(label, values(args))
            return shot.tuned, shot.original, f"update: {shot.seconds * 1000:.0f} ms (edit and both renders)", ""

        def styleclip(label, text, count, progress=gr.Progress()):
            used = [s for s in studio.sliders() if s.key.startswith("styleclip:")]
            if len(used) >= SPARE_SLIDERS:
                raise ValueError(f"at most {SPARE_SLIDERS} StyleCLIP directions per session")
            slider = studio.styleclip(label, text, int(count or 1), on_step=lambda k, n: progress((k, n), desc="StyleCLIP"))
            slot = [s.key for s in studio.sliders() if s.key.startswith("styleclip:")].index(slider.key)
            updates = [gr.update() for _ in spares]
            updates[slot] = gr.update(visible=True, label=slider.key, minimum=round(slider.minimum, 3),
                                      maximum=round(slider.maximum, 3), value=round(slider.value, 3))
            return (*updates, f"StyleCLIP direction for {text!r}: |offset| {slider.value:.3f}, saved at {slider.source}")

        def save_edit(label, *args):
            folder = studio.save(label, values(args))
            return f"saved {folder}: edit.png, original.png, latent.pt, recipe.json (replay: see recipe.json)"

        def animate_edit(label, *args):
            out = studio.animate(label, values(args))
            return str(out), f"wrote {out}"

        render_outputs = [edit_tuned, edit_original, timing, status]
        choice.change(guarded(show_image, 5), [choice], [target, inversion, tuned, metrics, status]) \
            .then(guarded(update, 4), [choice, *everything], render_outputs)
        for slider in everything:
            slider.change(guarded(update, 4), [choice, *everything], render_outputs, trigger_mode="always_last",
                          show_progress="hidden")
        reset.click(lambda: [gr.update(value=0) for _ in everything], None, everything)
        save.click(guarded(save_edit, 1), [choice, *everything], [status])
        animate.click(guarded(animate_edit, 2), [choice, *everything], [video, status])
        run_styleclip.click(guarded(styleclip, len(spares) + 1), [choice, prompt, steps], [*spares, status])
        if first is not None:
            page.load(guarded(show_image, 5), [choice], [target, inversion, tuned, metrics, status]) \
                .then(guarded(update, 4), [choice, *everything], render_outputs)
    return page


def launch(page, host: str, port: Optional[int], open_browser: bool = False, block: bool = True) -> None:
    """Serve the page (block: until interrupted; else return at once, the server in a thread: page.close() stops it)."""
    gr = require("gradio", "the studio")
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
    page.queue().launch(server_name=host, server_port=port, inbrowser=open_browser, share=False, ssr_mode=False,
                        theme=theme, css=CSS, footer_links=[], quiet=not block, prevent_thread_lock=not block)
