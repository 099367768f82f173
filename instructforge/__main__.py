from instructforge.cli import main

if __name__ == "__main__":  # vLLM spawns worker processes: keep the entry point guarded
    main()
