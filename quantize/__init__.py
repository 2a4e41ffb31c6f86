"""utterd.quantize"""
