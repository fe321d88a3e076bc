package splunk

import "gopkg.in/yaml.v3"

type yamlNode = yaml.Node

func unmarshalYAML(src string, n *yaml.Node) error { return yaml.Unmarshal([]byte(src), n) }
