"""Known-bad variants of the reference service, each breaking one promise on purpose.

Every mutant is a thin override of one reference component, declared in catalogue.yaml with
the claims it must be caught violating. The suite is only trusted while it kills them all.
"""
