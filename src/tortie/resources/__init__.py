"""Resources through the calicoctl verbs: one generic service (``service``) and what each
kind adds to it (``hooks``: IPPool overlap checks and pool deletion, Node release,
IPAMConfiguration's single stored form)."""
