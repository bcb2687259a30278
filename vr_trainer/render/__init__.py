"""moderngl renderer: meshes, tissue materials, instruments, annotations, text panels, mirror."""
