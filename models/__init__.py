"""utterd.models"""
