"""Past one machine on Ray (``pip install sizewise[ray]``): the gateway on Ray Serve (:mod:`.deployments`),
``collect`` and ``eval`` spread over Ray tasks (:mod:`.batch`). Ray is imported only inside these modules'
functions or by modules that only the ``--ray`` paths import: the single-machine path never loads it.
"""
