"""Sequential: modules applied one after another."""

from ..module import Module


class Sequential(Module):
    """y = f_n(... f_2(f_1(x))); backward runs the layers in reverse order."""

    def __init__(self, *layers: Module):
        super().__init__()
        for index, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential item {index} is {type(layer).__name__}, not a Module")
            setattr(self, str(index), layer)
        object.__setattr__(self, "layers", list(layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output, input_grad=True):
        if not self.layers:
            return grad_output
        for layer in reversed(self.layers[1:]):
            grad_output = layer.backward(grad_output)
        return self.layers[0].backward(grad_output, input_grad)

    def config(self):
        return {"layers": list(self.layers)}

    @classmethod
    def from_config(cls, config):
        layers = config["layers"]
        if not isinstance(layers, list):
            raise TypeError(f"Sequential's layers must be a list of modules, got {type(layers).__name__}")
        return cls(*layers)

    def extra_repr(self):
        return ""

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)
