"""The `shared` repository: the datasets of ../shared (beside the checkout), one
filegroup per dataset, so a test declares the data it reads (`@shared//:<dataset>`)
and bazel places it at `<runfiles>/shared/datasets/<dataset>`: the same path relative
to the workspace as in the checkout, so tests find it as `../shared/datasets`.

A dataset absent on this machine is an empty filegroup: the build still works, and
the test that needs it skips, or fails where TF_FEDSCALE_REQUIRE_SHARED_DATA is set.
"""

def _shared_data_impl(ctx):
    workspace = ctx.path(Label("//:WORKSPACE")).dirname
    datasets = ctx.path("%s/%s/datasets" % (workspace, ctx.attr.path))
    lines = ['package(default_visibility = ["//visibility:public"])']
    for name in ctx.attr.datasets:
        source = datasets.get_child(name)
        if source.exists:
            ctx.symlink(source, "datasets/" + name)
        lines.append('filegroup(name = "%s", srcs = glob(["datasets/%s/**"], allow_empty = True))' %
                     (name, name))
    ctx.file("WORKSPACE", 'workspace(name = "shared")\n')
    ctx.file("BUILD", "\n".join(lines) + "\n")

shared_data_repository = repository_rule(
    implementation = _shared_data_impl,
    attrs = {
        "path": attr.string(mandatory = True, doc = "relative to the workspace root"),
        "datasets": attr.string_list(mandatory = True),
    },
    local = True,
)
