"""Lab code: what the project runs to learn about tpserve, apart from the product and its tests.

- ``lab.gpu``: drivers for sessions on GPU hosts (the host scripts, the tuning, time-to-ready, scale-out and
  hardened-pod rehearsals) and the files they need there;
- ``lab.benchmarks``: scripts that measure and print figures (the commands named in ``results/``'s READMEs);
- ``lab.hubfake``: a stand-in for a service nobody here can reach, the model hub, at the HTTP level.

Lab code is never shipped in the wheel (setuptools finds packages under ``src/`` only) and never imports
``tests``; tests may import it. Its scripts run from the repository root; those that import ``lab`` want the
root on the path (``lab/gpu/host_env.sh`` puts ``src`` and the root on ``PYTHONPATH`` on the GPU host).
"""
