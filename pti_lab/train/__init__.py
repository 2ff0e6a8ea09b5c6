"""Scripts that train the shipped synthfaces networks and fit their editing boundaries:

    python -m pti_lab.train.synthfaces_generator   the 64 px StyleGAN2
    python -m pti_lab.train.synthfaces_predictor   attributes and identity
    python -m pti_lab.train.synthfaces_clip        the tiny image-text model
    python -m pti_lab.train.fit_boundaries         InterfaceGAN boundaries

They import the library; nothing in the library imports them.
"""
