module qtask.dev/qtask

go 1.21
