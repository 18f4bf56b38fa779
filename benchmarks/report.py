def write(results, *, out_dir):
    pass
