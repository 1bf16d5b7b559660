from adpipe.core.cli import main

main()
