from imagebuilder.cli import main

main()
