"""``mvemo serve`` and its client: a process that imported mvemo's stack and loaded its models once runs each
``mvemo predict`` of a shell that asks for it (``MVEMO_SERVE=1``) in a fork of itself, so that a song's label costs
the song, not the start-up.

Standard library only: the client (``client.forward``) runs in every ``mvemo predict`` before anything else is
imported. ``wire`` holds the socket's place and the messages, ``match`` what a served run must share with a process of
the caller's own (code, CPU affinity, limits, cgroup, nice value, thread counts), ``server`` the serving loop and its
forks.
"""
