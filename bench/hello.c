/* bench/hello.c: the floor for bench/greet, a greeting and nothing else. */
#include <unistd.h>

int
main(void)
{
	char buf[512];

	if (write(1, "220 hello.example ESMTP\r\n", 25) != 25)
		return 1;
	while (read(0, buf, sizeof(buf)) > 0)
		if (write(1, "250 2.0.0 Ok\r\n", 14) != 14)
			return 1;
	return 0;
}
