"""The toy SVD: SVD's own architecture at 64x64, trained on synthetic video made by code.

`data` makes the clips, `train` trains the model (`vsteer models train-toy`), `measures` reads what a
clip shows (where the shape is, what colour it is). Importing this package loads nothing heavy.
"""
