"""Dynamic expressions (Sparse2Dense): SRVF landmark motions, Motion3DGAN, S2D-Dec dense decoding.

Importing this package loads torch; the add-on never imports it (it talks to the backend).
"""
