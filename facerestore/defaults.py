"""Defaults the command line shows in its help, kept free of heavy imports (torch) so that
`facerestore --help` and option parsing stay fast."""

#: the model `restore`, `eval` and `demo` use unless told otherwise (bundled in facerestore/weights)
DEFAULT_MODEL = "masked-any"
#: the face detector `restore` uses unless told otherwise (a registered `detector` component)
DEFAULT_DETECTOR = "masked"
