"""Capture devices: each owns one stream and a producer thread; none imports UI code.

Factories take a spec string (``synthetic``, ``replay:DIR``, ``tobii``, an index or a path)
and return a :class:`~emer_live.devices.base.Device`.
"""
