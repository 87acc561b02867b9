"""Site services: what a VoBox (a site's computing element) does below central.

``batch`` is the pluggable batch-system interface with its ``fork`` (embedded default) and
``slurm`` implementations; ``slots`` decides how many JobAgents to submit;
``startup_script`` writes the script a JobAgent starts from (the contract with
``--role jobagent``: configuration through the environment); ``vobox`` is the loop tying
them to central's answers. The network side (relaying worker nodes' calls) is
``jalien.roles.vobox``.
"""
