from service.cli import main

if __name__ == "__main__":  # guarded: the workers of ``serve --workers`` import this module again
    raise SystemExit(main())
