"""Ansible plugins of Sovereign; ansible.cfg points Ansible at the folders below."""
