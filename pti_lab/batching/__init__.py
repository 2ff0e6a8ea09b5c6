"""The batching engine: K independent optimisations run as one, each exactly as it would run alone.

The stages' loops (pti_lab/inversion/projector.py, pti_lab/tuning/pivotal.py) are written once, for K
problems; this package holds what makes that possible without standing in front of the algorithm:

  stacked.py  every optimised tensor stacked along dim 0, one row per problem: Adam over the rows,
              rows dropped when their problem is done, the generator rendered with K copies of its
              tuned weights (torch.func.vmap), one bad input refused without failing the others
  problems.py which problems are still optimised, what each recorded per step, and what each ended
              with (its result, or the error that failed it alone)
  memory.py   the memory a batch of K needs, measured with one step of each stage before any image,
              so that a K that cannot fit stops the run at once with one line
"""
