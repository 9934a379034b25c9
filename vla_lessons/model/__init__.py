"""Models of the course: the mini OpenVLA-shaped VLA and the real OpenVLA-7B (``model.openvla``).

Introduced in lesson 05.
"""
