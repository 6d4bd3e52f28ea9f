"""Persona groups, the tenant library, and a generated person as a test persona (issue 17).

`groups`: a project's groups, each member stored as seed + generator version + overrides and shown through
`view.describe`; `library`: personas promoted out of a group and reused in others; `from_person`: a test persona
(simulated visitor) written from a generated person's attributes.
"""
