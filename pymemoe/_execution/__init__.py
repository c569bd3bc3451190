"""How passes over subjects are scheduled (internal): blocks of subjects in a loop or in
threads (``blocks``; the Dask workers of :mod:`pymemoe.distributed` serve the same contract)
and independent tasks in threads with a progress bar (``threads``)."""
