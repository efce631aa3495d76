"""Shaping backends: the interface (`_base`), kernel tc (`_kernel`, `_tc_*`), the userspace
engine (`_userspace`, over `netem._userspace`), and the choice between them (`_select`)."""
