"""utterd.daemon"""
