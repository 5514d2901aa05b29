"""The unimodal nets of papers 001 and 003."""

from extract.nets.registry import NET_NAMES, PRETRAINED, get_net

__all__ = ["NET_NAMES", "PRETRAINED", "get_net"]
