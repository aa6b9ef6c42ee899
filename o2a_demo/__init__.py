"""The `o2a-demo` console script (the README main job) and helpers shared with the client tests and benchmarks:
a procedural walking figure, a bpy rig builder, a contact sheet and `ServerProcess` (o2a-server as a child process).
Not part of the Blender add-on."""
