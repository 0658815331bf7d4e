"""Pure steering math: tensors in, tensors out. No I/O, no devices, no diffusers."""
