"""`pocketquant bench`: measurements on this machine, each figure beside a baseline of the
same run. Installed with the package but only usable with the ``bench`` extra (uvloop for
the measuring clients); nothing outside this package imports it but the CLI command."""
