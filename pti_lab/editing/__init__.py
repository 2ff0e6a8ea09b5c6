"""Editors applied to pivots and rendered with the tuned generator: InterfaceGAN, GANSpace, StyleCLIP
(latent edits) and StyleGAN3's input transform."""

from pti_lab.editing.editor import CombinedEditor, Edit, Editing, Editor, SequentialEditor
from pti_lab.editing.ganspace import GANSpaceEditor
from pti_lab.editing.interfacegan import InterfaceGANEditor
from pti_lab.editing.styleclip import StyleCLIPEditor
from pti_lab.editing.transform import TransformEditor

__all__ = ["CombinedEditor", "Edit", "Editing", "Editor", "GANSpaceEditor", "InterfaceGANEditor", "SequentialEditor", "StyleCLIPEditor",
           "TransformEditor"]
