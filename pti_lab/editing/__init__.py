"""Latent editors applied to pivots and rendered with the tuned generator: InterfaceGAN, GANSpace, StyleCLIP."""

from pti_lab.editing.editor import CombinedEditor, Edit, Editing, Editor, SequentialEditor
from pti_lab.editing.ganspace import GANSpaceEditor
from pti_lab.editing.interfacegan import InterfaceGANEditor
from pti_lab.editing.styleclip import StyleCLIPEditor

__all__ = ["CombinedEditor", "Edit", "Editing", "Editor", "GANSpaceEditor", "InterfaceGANEditor", "SequentialEditor", "StyleCLIPEditor"]
