"""synthfaces: the embedded offline face domain (DESIGN §7).

    from pti_lab.synthfaces.params import sample_params   # the documented parameter vector
    from pti_lab.synthfaces.render import render          # vectors -> anti-aliased images
    from pti_lab.synthfaces.testsets import make_testset  # the seeded in-domain / out-of-domain sets

Nothing is re-exported here: a `render` function in this namespace would shadow the `render` module.
"""
