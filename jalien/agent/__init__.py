"""The JobAgent service: what runs on a worker node between getMatchJob and DONE.

A sandbox per job (``sandbox``), the payload's environment and packages (``environment``),
the payload in its own session (``payload``), resource monitoring against the JDL's limits
(``monitor``), the spy report (``spy``), the payload's local socket (``localsocket``), one
job's life (``runner``) and the matching loop (``agent``). The role (``roles/jobagent.py``)
injects the connections and the copy engine: services never import each other.
"""
