from accelpool.cli.main import main

main()
